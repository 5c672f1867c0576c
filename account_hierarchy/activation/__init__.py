"""The activation stage: diffs between hours and delivery of Segment calls to destinations."""
