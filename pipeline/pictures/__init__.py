"""Picture makers: label overlays and grids (:mod:`.overlay`), prior grids
(:mod:`.prior_grid`), dataset grids (:mod:`.dataset_grid`) and the static inspection page
of a synthesized dataset (:mod:`.inspect_page`)."""
