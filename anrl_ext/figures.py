"""matplotlib for the tools' figures: imported only when a figure is drawn, on the Agg backend."""


def pyplot():
    """matplotlib.pyplot on the Agg backend: the figures are written to files and need no display (a
    headless machine has none); imported here, not at the top of a module, so tools that draw nothing
    start without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
