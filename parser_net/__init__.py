"""Parsing networks (DeepLab/ASPP, attention to scale, SS-NAN, an encoder-decoder) and joint
parsing + pose networks (JPPNet, the Parsing Induced Learner, HTCorrM), trained on real +
synthetic labels.  See method.md sections 6-7."""
