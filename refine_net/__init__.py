"""Refinement U-Net (Fang et al., CVPR 2018, section 3.5): image + prior -> label map;
its training, evaluation, and label synthesis for keypoint-only people.

Built on :mod:`pipeline`; see ../shared/docs/method.md sections 4-5.
"""
