"""Op kinds: the channel rules of functions, torch ops and tensor methods, by topic."""
