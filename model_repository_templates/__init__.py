"""Package data: the ``config.pbtxt`` and ``1/model.py`` templates ``sat-triton build`` renders
(found through ``importlib.resources`` as ``sat_triton.model_repository_templates``)."""
