"""The prior chain (Fang et al., CVPR 2018, sections 3.2-3.4): pose normalisation and the
crop frame (:mod:`.pose`), the visibility-aware pose index (:mod:`.pose_index`), body
segments (:mod:`.segments`), per-segment morphing (:mod:`.morph`), the prior bank and
priors (:mod:`.bank`), pasting people back into the image (:mod:`.paste`) and prior
evaluation (:mod:`.evaluate`)."""
