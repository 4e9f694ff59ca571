"""The pyramid levels of the global stages and the lesion's box of the local refinement: shared by
the driver (:mod:`.driver`) and the quality figures that re-measure an alignment (:mod:`.quality`)."""

# Levels: (voxel size in mm for the pyramid, iterations, sampled voxels per iteration).
GLOBAL_LEVELS = ((6.0, 80, 6000), (3.0, 50, 8000))
LOCAL_LEVEL = (1.5, 50, 8000)
LOCAL_HALF_BOX_MM = 35.0
