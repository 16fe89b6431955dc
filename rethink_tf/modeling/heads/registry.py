"""Registry of head networks by (category, name), so gin picks heads by string.

Categories in use: "box" ("2fc", "4conv1fc": gin-configurable builder functions, see
heads/box_head.py for the arguments the model passes them), "mask" ("conv_upsample", the class). New
heads register a class or a builder (any callable returning the layer) with
`@register_head(category, "name")`; a builder decorated with `@gin.configurable` gets its own
bindings (`my_head.width = 64`) and is picked by `build_model.box_head = "name"`.
"""
_REGISTRY = {}


def register_head(category, name):
    """Decorator registering a head class or builder function under (category, name)."""

    def wrap(cls):
        key = (category, name)
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ValueError(f"Head {category}/{name} is already registered to {_REGISTRY[key]}.")
        _REGISTRY[key] = cls
        return cls

    return wrap


def registered_heads(category):
    """Sorted names registered under `category`."""
    return sorted(n for c, n in _REGISTRY if c == category)


def build_head(category, head_name, **kwargs):
    """Instantiates the head registered as (category, head_name) with `kwargs` (incl. layer name)."""
    if (category, head_name) not in _REGISTRY:
        raise ValueError(f"Unknown {category} head {head_name!r}; registered: "
                         f"{registered_heads(category)}.")
    return _REGISTRY[(category, head_name)](**kwargs)
