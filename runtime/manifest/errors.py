"""The one error every manifest problem raises."""


class ManifestError(ValueError):
    """A manifest is missing, malformed or incompatible; the message is one line."""
