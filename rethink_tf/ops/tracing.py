"""What the code is being traced for, where the fastest op choice depends on it."""
import tensorflow as tf
from tensorflow.python.ops import control_flow_util  # no public equivalent


def in_xla_context():
    """True while tracing inside tf.function(jit_compile=True) (or a nested XLA context).

    Code that has a fast data-dependent-shape path for graph mode and a static-shape path for
    XLA picks between them with this.
    """
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())
