"""Repository-wide pytest set-up: the cnnconv plugin is loaded through its entry point
(``pip install -e .``); this file only makes the checkout importable without it."""
