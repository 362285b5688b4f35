"""Parsing networks (DeepLab/ASPP, attention to scale, SS-NAN) and joint parsing + pose networks
(JPPNet family), trained on real + synthetic labels.  See method.md sections 6-7."""
