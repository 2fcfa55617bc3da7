"""The Textual dashboard: prompt, streamed answers, latency, breaker, performance mode, system.

`main.run_dashboard(settings)` is the entry point; `app.DashboardApp` renders the events of
an engine service (the EngineClient surface) and never calls the engine directly.
"""
