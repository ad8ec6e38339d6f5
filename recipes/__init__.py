"""The recipes that ship with weightprep (`weightprep recipes`)."""
