"""User-facing failures. A bug is not a subclass of EdgeprojError; the CLI prints these as one line."""


class EdgeprojError(Exception):
    """Root of every error a user can fix; the message says what to do."""


class DataError(EdgeprojError):
    """Unusable input data: missing folder, unreadable image, bad mask, wrong channels."""


class ConfigError(EdgeprojError):
    """An invalid option or combination of options."""


class CheckpointError(EdgeprojError):
    """A training run directory or checkpoint that is missing, corrupt or of an unknown variant."""


class BundleError(EdgeprojError):
    """A bundle whose manifest or graphs are missing, corrupt or of an unsupported schema."""


class BackendError(EdgeprojError):
    """An inference backend that is unavailable or misconfigured."""


class DependencyError(EdgeprojError):
    """An optional dependency that this command needs is not installed."""


def require(module: str, extra: str):
    """Import an optional dependency or raise DependencyError naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised on bare installs
        raise DependencyError(f"'{module}' is not installed; install it with: pip install 'edgeproj[{extra}]'") from exc
