"""partsynth's on-disk dataset formats: the person record every reader yields
(:mod:`.records`), partsynth dataset folders (:mod:`.folder`), file reading and atomic writing
(:mod:`.files`), dataset manifests (:mod:`.manifest`), the per-image output folders
(:mod:`.item_folder`, :mod:`.output_lock`) and the three folder kinds the commands write:
synthesized datasets (:mod:`.synth_dataset`), keypoints folders (:mod:`.estimated_poses`)
and predictions (:mod:`.predictions`).  docs/data.md describes each."""
