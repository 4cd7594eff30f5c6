"""The flights example domain: the nycflights13 data set, onboarded by configuration alone."""
