"""What a user runs against a running stack: traffic simulation, reports, pipeline progress."""
