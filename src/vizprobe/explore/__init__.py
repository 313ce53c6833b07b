"""The unit explorer: a static site of a scan's units with their scores, exemplars, visualizations and
occlusion heatmaps (`vizprobe explore`)."""

from vizprobe.explore.site import ExploreSettings, explore, scores_for_scan

__all__ = ["ExploreSettings", "explore", "scores_for_scan"]
