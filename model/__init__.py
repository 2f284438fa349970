"""Golden models of PIM modules and channels: pure Python + numpy."""
