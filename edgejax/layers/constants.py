"""Constants named once: normalisation statistics and the study's nine models."""

# timm's IMAGENET_DEFAULT_MEAN / _STD and IMAGENET_INCEPTION_MEAN / _STD.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

# The nine models of the study (arXiv 2507.23315): configs/, the benchmarks' "paper" set and the
# sweeps' model arguments.
STUDY_MODELS = (
    "efficientnetv2_s",
    "tf_efficientnetv2_s",
    "convnext_tiny",
    "mobilevitv2_050",
    "mobilevitv2_075",
    "mobilevitv2_100",
    "mobilenetv3_large_100",
    "tiny_vit_21m_224",
    "repvgg_a2",
)
