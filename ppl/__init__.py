"""The `ppl` command line and the demo report; sits on top of ppl_models, inference and plates."""
