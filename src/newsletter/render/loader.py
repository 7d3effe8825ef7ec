"""Where templates come from: one real folder inside the campaign, and nothing private.

Jinja's `FileSystemLoader` refuses `..` and absolute names, but it opens whatever
a name leads to, links included. With `templates -> .` a template could
`{% include ".env" %}` and put the relay password and every address of the list
into each message; with `templates -> /` it could read any file of the machine.
So a template is loaded only when:

- the templates folder is a real folder of the campaign folder, not a link
  (checked once, when the loader is made, so `check` stops before any walk);
- the file lies inside that folder once links are followed (a link inside
  `templates/` may point at another template, never out of it);
- it is none of the campaign's private files (`.env`, the list,
  `unsubscribed.csv`, the journal), under any name, hard links included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.loaders import split_template_path

from newsletter.inputs.folder import CampaignFolder, PrivateFiles, check_templates_folder, inside


class CampaignLoader(jinja2.FileSystemLoader):
    """Loads templates from one campaign's `templates/` folder only.

    `private` are the files no template may be; by default those of the campaign
    folder above `folder`, with the default names.
    """

    def __init__(self, folder: Path, *, private: PrivateFiles | None = None) -> None:
        check_templates_folder(folder)
        super().__init__(folder, encoding="utf-8", followlinks=False)
        self.folder = folder
        self._root = folder.resolve()
        self._private = private if private is not None else CampaignFolder(folder.parent).private()

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        # Checked before Jinja reads the file: a refused one is never opened.
        self._check(template, Path(self.folder, *split_template_path(template)))
        source, filename, uptodate = super().get_source(environment, template)
        self._check(template, Path(filename))
        return source, filename, uptodate

    def _check(self, template: str, path: Path) -> None:
        real = path.resolve()
        if real == self._root or not inside(real, self._root):
            raise SecurityError(
                f"{self.folder.name}/{template} leads outside {self.folder.name}/ "
                "(a symbolic link?); templates are only read from the campaign's own folder"
            )
        what = self._private.identify(real)
        if what is not None:
            raise SecurityError(
                f"{self.folder.name}/{template} is {what}, which is never read as a template: "
                "settings and addresses stay out of messages"
            )
