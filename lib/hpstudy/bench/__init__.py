"""The benchmark application and its baseline; no study imports them.

``throughput``      ``hpstudy bench``: step throughput of the library's path against the report's
                    pipeline, alternating segments in one run (``python -m hpstudy.bench``)
``study``           ``hpstudy bench --plan PRESET``: a whole plan both ways
``report_pipeline`` the report's own pipeline (PIL images, torchvision transforms, DataLoader,
                    NCHW): the baseline both compare against
``gpu_check``       ``scripts/gpu_check.sh``: the bare GPU machine's check (no install)
"""
