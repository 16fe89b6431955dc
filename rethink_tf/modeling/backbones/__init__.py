"""Backbones: ResNet/ResNeXt (C2-C5) and VGG-16 (conv5_3)."""
