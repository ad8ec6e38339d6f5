"""`weightprep publish`: verified weights to the Hub, Google Drive or a folder, proven intact."""
