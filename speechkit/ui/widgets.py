"""Interactive browsers (ipywidgets) for notebooks, JupyterLab and Voila: the notebooks only display them.

- `AudioBrowser`: any manifest - pick an utterance, play it, read its transcript and any systems' hypotheses with
  their errors highlighted.
- `Browser`, `select_first`, `audio_player`, `rows_table`: the parts a paper's own browser is built from (the
  Speech-Hands routing browser: `speechkit.speech_hands.demo`).

The logic (filtering, what each panel shows) is plain Python over the widgets' values, so tests drive it headlessly.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path

import ipywidgets as widgets

from speechkit.data.audio import load_utterance, wav_bytes
from speechkit.data.manifest import Utterance
from speechkit.ui.display import entity_errors, highlight_entities, highlight_errors


def select_first(choice: widgets.Dropdown | widgets.Select) -> None:
    """New options leave nothing chosen: choose the first, so the panel below always shows an utterance."""
    if choice.options and choice.value is None:
        choice.value = choice.options[0][1]


def audio_player(utterance: Utterance, data_dir: Path) -> widgets.Audio:
    return widgets.Audio(value=wav_bytes(load_utterance(utterance, data_dir)), format="wav", autoplay=False)


class Browser:
    """Base of the browsers: a notebook cell that ends with one displays its `widget`."""
    widget: widgets.Widget

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)


class AudioBrowser(Browser):
    """Browse a manifest: a text filter, a list of utterances, the chosen one's audio, transcript and hypotheses."""

    def __init__(self, utterances: Sequence[Utterance], data_dir: str | Path,
                 hypotheses: Mapping[str, Mapping[str, str]] | None = None, rows: int = 8):
        """`hypotheses`: system name -> {utterance id: transcript}."""
        if not utterances:
            raise ValueError("nothing to browse: no utterances")
        self.utterances, self.data_dir = list(utterances), Path(data_dir)
        self.hypotheses = dict(hypotheses or {})
        self.search = widgets.Text(placeholder="filter: words of the transcript or the id", description="filter")
        self.choice = widgets.Select(rows=rows, layout=widgets.Layout(width="40%"))
        self.player = widgets.Box()
        self.details = widgets.HTML()
        self.search.observe(lambda _: self.refresh(), "value")
        self.choice.observe(lambda _: self.show(), "value")
        self.widget = widgets.VBox([self.search, widgets.HBox([self.choice, widgets.VBox([self.player,
                                                                                           self.details])])])
        self.refresh()

    def matching(self) -> list[Utterance]:
        query = self.search.value.strip().lower()
        return [u for u in self.utterances if not query or query in u.id.lower() or query in (u.text or "").lower()]

    def refresh(self) -> None:
        self.choice.options = [(f"{u.id} ({u.duration:.1f} s)", u.id) for u in self.matching()]
        select_first(self.choice)
        self.show()

    def show(self) -> None:
        chosen = next((u for u in self.utterances if u.id == self.choice.value), None)
        if chosen is None:
            self.player.children, self.details.value = (), "<i>no utterance matches</i>"
            return
        self.player.children = (audio_player(chosen, self.data_dir),)
        # entity spans marked in the reference; each hypothesis says how many entity words it got wrong
        rows = [("reference", highlight_entities(chosen) if chosen.text else "(unlabeled)")]
        for system, by_id in self.hypotheses.items():
            if chosen.id in by_id:
                hypothesis = by_id[chosen.id]
                shown = html.escape(hypothesis)
                if chosen.text:
                    errors = entity_errors(chosen, hypothesis)
                    shown = highlight_errors(chosen.text, hypothesis, chosen.language) + (
                        f" <small>({errors})</small>" if errors else "")
                rows.append((system, shown))
        self.details.value = rows_table(rows, f"{chosen.id} · {chosen.domain} · {chosen.language}")


def rows_table(rows: Sequence[tuple[str, str]], caption: str) -> str:
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>{v}</td></tr>"
                   for k, v in rows)
    return f"<table><caption>{html.escape(caption)}</caption>{body}</table>"
