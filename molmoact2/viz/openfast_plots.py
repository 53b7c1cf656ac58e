"""Plotly figures for the OpenFAST explorer (app tab and notebook): one function per stage.

Inputs are `molmoact2.openfast.inspect.ChunkInspection` / `lab.FailureReport`; no math beyond
arranging arrays for display. Colours are deterministic (Plotly's qualitative palette by index).
"""

from __future__ import annotations

import numpy as np

PALETTE = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880", "#FF97FF",
           "#FECB52")


def _names(insp, names=None) -> list[str]:
    return list(names or [j.name for j in insp.per_joint])


def actions_figure(insp, names=None):
    import plotly.graph_objects as go

    fig = go.Figure()
    steps = np.arange(insp.time_horizon)
    for j, name in enumerate(_names(insp, names)):
        custom = None if insp.raw_actions is None else insp.raw_actions[:, j]
        fig.add_trace(go.Scatter(x=steps, y=insp.actions[:, j], mode="lines+markers", name=name,
                                 line={"color": PALETTE[j % len(PALETTE)]}, customdata=custom,
                                 hovertemplate="step %{x}<br>normalized %{y:.3f}"
                                 + ("<br>data units %{customdata:.2f}" if custom is not None else "")
                                 + f"<extra>{name}</extra>"))
    fig.update_layout(title="1. The action chunk, normalized to [-1, 1] (1–99 % range of each joint)",
                      xaxis_title="step", yaxis_title="normalized action", height=380, margin={"t": 50})
    return fig


def dct_figure(insp, names=None):
    import plotly.graph_objects as go

    lim = float(np.abs(insp.dct).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=insp.dct, x=_names(insp, names), y=list(range(insp.time_horizon)),
                               colorscale="RdBu", zmid=0, zmin=-lim, zmax=lim,
                               hovertemplate="frequency %{y}<br>%{x}<br>coefficient %{z:.4f}<extra></extra>"))
    fig.update_layout(title="2. DCT-II (orthonormal) over time: energy piles up in the first frequencies",
                      yaxis={"title": "frequency", "autorange": "reversed"}, height=520, margin={"t": 50})
    return fig


def integers_figure(insp, names=None):
    import plotly.graph_objects as go

    z = insp.integers
    lim = float(np.abs(z).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=z, x=_names(insp, names), y=list(range(insp.time_horizon)), colorscale="RdBu",
                               zmid=0, zmin=-lim, zmax=lim, text=z, texttemplate="%{text}",
                               hovertemplate="frequency %{y}<br>%{x}<br>round(coef × scale) = %{z}<extra></extra>"))
    fig.update_layout(title=f"3. × scale {insp.scale} and round (half to even): "
                            f"{insp.zero_fraction * 100:.0f} % of the {insp.integers.size} integers are 0",
                      yaxis={"title": "frequency", "autorange": "reversed"}, height=520, margin={"t": 50})
    return fig


def tokens_figure(insp, names=None):
    import plotly.graph_objects as go

    owner = insp.piece_of_coefficient
    n = len(PALETTE)
    # Discrete colour per piece: piece index mod palette size, as a stepped colorscale.
    colorscale = []
    for i, c in enumerate(PALETTE):
        colorscale += [[i / n, c], [(i + 1) / n, c]]
    token_ids = np.array([[insp.pieces[k].token_id for k in row] for row in owner])
    fig = go.Figure(go.Heatmap(
        z=owner % n, zmin=0, zmax=n, x=_names(insp, names), y=list(range(insp.time_horizon)),
        colorscale=colorscale, showscale=False, text=insp.integers, texttemplate="%{text}",
        customdata=np.stack([owner, token_ids], axis=-1),
        hovertemplate="frequency %{y}, %{x}<br>integer %{text}<br>piece #%{customdata[0]}, "
                      "id %{customdata[1]}<extra></extra>"))
    fig.update_layout(title=f"4. BPE pieces over the coefficients (frequency-major order, one colour per token): "
                            f"{insp.num_tokens} tokens for {insp.integers.size} integers",
                      yaxis={"title": "frequency", "autorange": "reversed"}, height=520, margin={"t": 50})
    return fig


def decoded_figure(insp, names=None):
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    names = _names(insp, names)
    raw = insp.raw_actions is not None
    orig = insp.raw_actions if raw else insp.actions
    dec = insp.decoded_raw if raw else insp.decoded
    cols = 3
    rows = -(-len(names) // cols)
    titles = [f"{n}: mean {j.mean_rel_pct:.2f} % / max {j.max_rel_pct:.2f} %" for n, j in zip(names, insp.per_joint)]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles)
    steps = np.arange(insp.time_horizon)
    for j in range(len(names)):
        r, c = j // cols + 1, j % cols + 1
        fig.add_trace(go.Scatter(x=steps, y=orig[:, j], name="original", line={"color": "#444"},
                                 showlegend=j == 0, legendgroup="o"), row=r, col=c)
        fig.add_trace(go.Scatter(x=steps, y=dec[:, j], name="decoded", line={"color": PALETTE[1], "dash": "dash"},
                                 showlegend=j == 0, legendgroup="d"), row=r, col=c)
    fig.update_layout(title="5. Decoded vs original per joint (error as % of the joint's 1–99 % range)"
                            + (" — data units" if raw else " — normalized units"),
                      height=300 * rows + 80, margin={"t": 90})
    fig.update_annotations(font_size=11)
    return fig


def lab_figure(report, names=None):
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    d = report.truth.shape[1]
    names = list(names or [f"dim{i}" for i in range(d)])
    cols = 3
    rows = -(-d // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names)
    steps = np.arange(report.truth.shape[0])
    series = [("true chunk", report.truth, "#444", "solid"),
              ("reference zeros fallback", report.zeros_units, PALETTE[1], "dot"),
              ("relaxed (pad/truncate)", report.relaxed_units, PALETTE[4], "dash")]
    if report.partial_units is not None:
        series.append(("partial (received prefix)", report.partial_units, PALETTE[2], "dashdot"))
    if report.decoded_units is not None:
        series.append(("decoded", report.decoded_units, PALETTE[0], "dash"))
    for j in range(d):
        r, c = j // cols + 1, j % cols + 1
        for k, (label, arr, color, dash) in enumerate(series):
            fig.add_trace(go.Scatter(x=steps, y=arr[:, j], name=label, line={"color": color, "dash": dash},
                                     showlegend=j == 0, legendgroup=str(k)), row=r, col=c)
    fig.update_layout(title="What each decode policy would command (data units)", height=300 * rows + 80,
                      margin={"t": 90})
    return fig
