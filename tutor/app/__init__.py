"""The browser side: the Gradio chat for students and the instructor tab (`server.py` composes it)."""

from tutor.app.server import build_app, serve, serve_in_thread

__all__ = ["build_app", "serve", "serve_in_thread"]
