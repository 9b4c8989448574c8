"""Datasets: image/mask folder readers and the synthetic shapes set (``segdeploy.datasets.shapes``)."""
