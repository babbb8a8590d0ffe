"""The shipped ImageNet class names are in Keras' class-index order."""

from onda.host.pipeline.resnet50 import IMAGENET_LABELS, imagenet_labels


def test_imagenet_labels_order():
    wnids = [line.split(" ", 1)[0] for line in IMAGENET_LABELS.read_text().splitlines()]
    assert len(wnids) == 1000 and wnids == sorted(wnids) and len(set(wnids)) == 1000
    labels = imagenet_labels()
    # A few well-known ILSVRC-2012 indices (as Keras' decode_predictions numbers them).
    assert (labels[0], labels[1], labels[281], labels[504], labels[817]) == \
        ("tench", "goldfish", "tabby", "coffee mug", "sports car")
