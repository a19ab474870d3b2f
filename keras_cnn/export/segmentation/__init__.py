"""Export adapter of the segmentation application: `adapter` makes a run's `SegmenterServable` and preset assets."""
