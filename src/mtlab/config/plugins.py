"""mtlab's own plug-ins whose options live in their own modules, imported here so that each registers its options
before :mod:`mtlab.config.schema` assembles the config unions; then the outside plug-ins (entry points)."""

import mtlab.data.builtin
import mtlab.models.custom
import mtlab.models.deeplab
import mtlab.models.imagenet_resnet
import mtlab.models.multi_lenet
import mtlab.models.segnet
import mtlab.models.timm_trunk  # noqa: F401  (each import registers its plug-in)
from mtlab.registry import load_entry_points

load_entry_points("mtlab.datasets")
load_entry_points("mtlab.models")
