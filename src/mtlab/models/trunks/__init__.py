"""mtlab's own small trunks, one module each (``mlp``, ``cnn``, ``resnet``); the ImageNet ResNet and timm trunks are
:mod:`mtlab.models.imagenet_resnet` and :mod:`mtlab.models.timm_trunk`.

Every trunk is a :class:`~mtlab.models.staged.StagedTrunk` built from its own options
(:class:`~mtlab.config.base.TrunkOptions`): named layers (``conv``, ``dense``; ``stem``, ``stages``) that analysis
tools reach by name or by type, and the stages soft-sharing models are wired from.
"""
