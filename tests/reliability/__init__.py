"""Faults injected for real, one file per failure mode a user met (a run that got stuck, a poisoned
checkpoint, a resume that drew other samples, a foreign run directory, bad COCO files, wrong-kind
configuration values, odd images to the SavedModel, bad image files, a lost final evaluation, predict
stopping at the first bad file):

    test_point1_checkpoint_unit        model + data position saved as one unit; real SIGKILL, full tmpfs
    test_point2_poisoned_checkpoint    NaN/Inf weights never saved; a non-finite LR refused at start-up
    test_point3_exact_resume           killed twice, every logged loss and the final weights repeat
    test_point4_foreign_run_dir        evaluate / export / train refuse another run's config.gin
    test_point5_malformed_segmentation segmentations pycocotools cannot take, found at load time
    test_point6_config_validation      wrong-kind bindings named at start-up, one line, no traceback
    test_point7_odd_images             gray / RGBA / degenerate / empty inputs to the SavedModel
    test_point8_bad_image_files        0-byte and non-image files found at start-up
    test_point9_final_eval             a finished run whose final evaluation died evaluates on restart
    test_point10_predict_bad_files     predict goes on past bad files and exits non-zero

and, because it needs the same tiny trained run: test_tta_commands (`evaluate --tta`).
"""
