"""CCTV face-emotion analytics runtime: decode, detect, track, enhance, classify, publish.

Importing this package never imports torch: the CPU inference path is ONNX Runtime.
"""
