"""mtlab's own datasets, one module each; importing this module registers them all (in this order, which is the
order ``mtlab`` lists them). Outside packages' datasets register through the ``mtlab.datasets`` entry points."""

import mtlab.data.mnist  # noqa: I001  (the order below is the listing order)
import mtlab.data.fashion
import mtlab.data.cifar100
import mtlab.data.mnist_pairs
import mtlab.data.multi_mnist
import mtlab.data.morpho_mnist
import mtlab.data.celeba
import mtlab.data.nyuv2
import mtlab.data.cityscapes
import mtlab.data.qm9
import mtlab.data.table
import mtlab.data.arrays  # noqa: F401  (each import registers its dataset)
