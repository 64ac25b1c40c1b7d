"""The moderator review console: a server-rendered FastAPI app (`modq console`)."""
