"""Write notebooks/00_welcome.ipynb (kept as a script so the notebook's source is reviewable)."""

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell(
        "# Welcome to the MolmoAct2 Workbench\n\n"
        "This notebook checks that everything the course needs runs **offline on a CPU**: the library, "
        "the Rerun viewer (served by this kernel, no CDN), a Plotly figure and an ipywidgets control.\n\n"
        "`import molmoact2` comes first: it applies the offline settings (including "
        "`RERUN_NOTEBOOK_ASSET=serve-local`, which must be set before `rerun` is imported)."
    ),
    nbf.v4.new_code_cell(
        "import os\n"
        "import molmoact2\n"
        "print('molmoact2', molmoact2.__version__)\n"
        "print({k: os.environ[k] for k in ('HF_HUB_OFFLINE', 'MUJOCO_GL', 'RERUN_NOTEBOOK_ASSET')})"
    ),
    nbf.v4.new_markdown_cell(
        "## A MolmoAct2 output, parsed\n"
        "MolmoAct2-Think writes 100 depth codes (a 10x10 grid over the main image) and then the action tokens. "
        "`molmoact2.tokens.parse_generated` checks the format and returns arrays."
    ),
    nbf.v4.new_code_cell(
        "import numpy as np\n"
        "from molmoact2 import tokens\n"
        "rng = np.random.default_rng(0)\n"
        "depth_bins = rng.integers(0, 128, size=100)\n"
        "action_ids = rng.integers(0, 2048, size=12)\n"
        "text = tokens.format_depth(depth_bins) + tokens.format_actions(action_ids)\n"
        "parsed = tokens.parse_generated(text)\n"
        "print(text[:120], '...')\n"
        "assert (parsed.depth_bins == depth_bins).all() and (parsed.action_ids == action_ids).all()\n"
        "parsed.depth_bins.reshape(10, 10)"
    ),
    nbf.v4.new_markdown_cell("## Plotly: the depth-code grid as a heatmap"),
    nbf.v4.new_code_cell(
        "import plotly.graph_objects as go\n"
        "fig = go.Figure(go.Heatmap(z=parsed.depth_bins.reshape(10, 10), text=parsed.depth_bins.reshape(10, 10),\n"
        "                           texttemplate='%{text}', colorscale='Viridis', showscale=False))\n"
        "fig.update_layout(title='depth codes (row-major, cell = row*10 + col)', yaxis_autorange='reversed',\n"
        "                  width=420, height=420)\n"
        "fig"
    ),
    nbf.v4.new_markdown_cell("## ipywidgets: a control that changes what you see"),
    nbf.v4.new_code_cell(
        "import ipywidgets as widgets\n"
        "cell = widgets.IntSlider(value=0, min=0, max=99, description='cell')\n"
        "out = widgets.Output()\n"
        "def show(change=None):\n"
        "    out.clear_output()\n"
        "    with out:\n"
        "        i = cell.value\n"
        "        print(f'cell {i} = row {i // 10}, col {i % 10}: code {parsed.depth_bins[i]}')\n"
        "cell.observe(show, names='value')\n"
        "show()\n"
        "widgets.VBox([cell, out])"
    ),
    nbf.v4.new_markdown_cell(
        "## Rerun, inside the notebook\n"
        "A recording of its own (never the global one), shown by the viewer this kernel serves."
    ),
    nbf.v4.new_code_cell(
        "import rerun as rr\n"
        "rec = rr.RecordingStream('molmoact2_welcome')\n"
        "for t in range(20):\n"
        "    rec.set_time('step', sequence=t)\n"
        "    rec.log('demo/sine', rr.Scalars(np.sin(t / 3)))\n"
        "rec.log('demo/codes', rr.Image(parsed.depth_bins.reshape(10, 10).astype(np.uint8)))\n"
        "rec.notebook_show(width=800, height=400)"
    ),
]
nb = nbf.v4.new_notebook(cells=cells, metadata={
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
})
nbf.write(nb, "notebooks/00_welcome.ipynb")
print("wrote notebooks/00_welcome.ipynb")
