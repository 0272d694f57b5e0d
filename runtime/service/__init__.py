"""The camera service: configuration (``config``), the loop per camera (``run``) and its JSON log (``logs``)."""
from .config import CameraConfig, ConfigError, ServiceConfig
from .logs import JsonLogFormatter, setup_logging
from .run import CameraSummary, ExitCode, Service, ServiceSummary

__all__ = ["CameraConfig", "CameraSummary", "ConfigError", "ExitCode", "JsonLogFormatter", "Service", "ServiceConfig", "ServiceSummary",
           "setup_logging"]
