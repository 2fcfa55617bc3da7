"""Screens: the dashboard (the default screen) and the help screen.

A new screen (an experiment runner, say) is pushed over the dashboard; the app keeps
feeding the dashboard's panes while it is covered.
"""
