"""`weightprep run RECIPE`: the whole path in one resumable command."""
