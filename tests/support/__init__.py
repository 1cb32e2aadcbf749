"""Helpers shared by the test modules: boards, models and programming settings. Test modules
import from here, never from each other."""
