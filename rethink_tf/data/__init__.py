"""Data: every dataset reaches the model through one input pipeline of fixed-shape batches.

Modules (import what you need; importing this package loads nothing heavy):
  sources          CocoSource (any COCO-format dir), SyntheticShapesSource (embedded default), write_image_ids
  tfds_source      TfdsSource (tfds coco/2017, voc, and this package's rethink_coco_instances builder)
  voc              VocSource (a VOCdevkit directory), CombinedSource (several sources as one training set)
  tfds_coco        the rethink_coco_instances tfds builder: a local COCO dir with box-cropped masks
  input_pipeline   build_dataset(source, training=..., global_batch_size=...), samples_seen(batch)
  preprocess       decode_image_bytes, resize_and_pad, normalize_image (shared with serving)
  augment          scale sampling and flips of boxes / masks / keypoints
  coco             json loading and validation, category mapping, subsets
  masks            box-cropped masks from polygons / RLE
  synthetic_shapes the generator of the embedded dataset
"""
