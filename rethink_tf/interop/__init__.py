"""Weights of other libraries into rethink_tf models (keras.applications, torchvision, Detectron).

  mapping       WeightMapper: source tensors -> model variables, the matched / unmatched / reshaped report
  archs         the supported source architectures and the rethink_tf settings (gin) each one needs
  convert       convert_backbone: source tensors of one architecture -> a rethink_tf body
  resnet_maps   walks a ResNet / VGG-16 body by its layer attributes, asking a naming scheme for names
  keras_apps    keras.applications ResNet50/101/152 and VGG16
  torchvision   torchvision ResNet-50/101/152, ResNeXt-101 32x8d, VGG-16 state dicts
  detectron     Detectron (Caffe2) ImageNet .pkl blobs
  torchvision_detection  maskrcnn/fasterrcnn_resnet50_fpn state dicts -> MaskRCNN layers, and the gin
                values of torchvision's inference conventions (DETECTOR_BINDINGS)
  detector_dir  a torchvision detector state dict -> a model directory `rethink_tf.export` reads
The CLI is `python -m rethink_tf.import_weights`. The package never imports torch; reading a torchvision
`.pth` file does, when it is installed (the `interop` extra).
"""
