"""Names of the raw features ExampleGen writes and of the features Transform outputs.

This module imports no TensorFlow, so the pipeline factory and the eval config can use it.
"""

# Raw features, as ExampleGen writes them (bytes, exactly as in the input file).
TEXT = "text"
TEXT_PAIR = "text_pair"
LABEL = "label"

# Transformed features: int64 [max_seq_length] model inputs and the int64 class id.
INPUT_WORD_IDS = "input_word_ids"
INPUT_MASK = "input_mask"
INPUT_TYPE_IDS = "input_type_ids"
MODEL_INPUTS = (INPUT_WORD_IDS, INPUT_MASK, INPUT_TYPE_IDS)
LABEL_ID = "label_id"
# String [batch] slice key for the Evaluator: the word count of the text (and text pair)
# as a range such as "10-19".
TEXT_LENGTH_BUCKET = "text_length_bucket"

# Name of the label vocabulary that Transform computes when `data.labels` is not set.
LABEL_VOCABULARY = "label"

# Serving signatures of the exported model.
SERVING_DEFAULT = "serving_default"
PREDICT_TEXT = "predict_text"
TRANSFORM_FEATURES = "transform_features"
PROBABILITIES = "probabilities"
PREDICTED_LABEL = "label"
# The label vocabulary in class-id order, repeated per example: string [batch, num_classes].
CLASSES = "classes"
