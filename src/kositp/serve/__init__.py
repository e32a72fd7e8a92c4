"""Serving stage: FastAPI OpenAI-compatible gateway over transformers or vLLM.

`kositp.serve` names both this package and the API's stage function (`kositp.serve(config,
**overrides)`, kositp/api.py). Importing any `kositp.serve.*` module binds the name to the package,
so the package itself is callable and runs that function: `kositp.serve(...)` works either way.
"""

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from kositp.api import serve

        return serve(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
