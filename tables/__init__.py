"""Paper tables from a run's result files: LaTeX, Markdown and bar charts; reads results, never trains."""
