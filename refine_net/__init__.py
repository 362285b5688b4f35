"""Refinement U-Net (Fang et al., CVPR 2018, section 3.5): image + prior -> label map.

Built on :mod:`pipeline`; see ../shared/docs/method.md section 4.
"""
