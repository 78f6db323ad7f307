"""``mtlab data list | verify | fetch``: where each dataset's files are, whether they are intact, and getting them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from mtlab.cli.console import make_console
from mtlab.errors import DataError, MtlabError, did_you_mean

if TYPE_CHECKING:
    from mtlab.data.placed import HandPlaced
    from mtlab.data.sources import Source

# Reading, checking and building data (numpy, torch) is imported by the actions that do it: `mtlab --help` builds
# this command's parser and must not wait for them.

_STYLE = {"ok": "green", "mismatch": "red", "corrupt": "red", "missing": "yellow"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="list, verify or download datasets",
        description="Datasets are looked for in --data-dir, then $MTLAB_DATA, then the user cache, then system "
        "directories. DATASET is a source (mnist, fashion-mnist, cifar100, and the embedded fashion-mnist-sample "
        "and mnist-sample) or a dataset that uses one (mnist-pairs, the multi-* composites); or a dataset whose files "
        "you put in place by hand (nyuv2, cityscapes, celeba: `mtlab data list` says where to get them).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="where each dataset's files were found")
    verifying = actions.add_parser(
        "verify", help="check every file's checksum, or counts and shapes (exit 1 on a problem)"
    )
    # No argparse choices: the sources and datasets are known once the dataset modules are imported (in the action).
    verifying.add_argument(
        "dataset", nargs="?", metavar="DATASET", help="a source, a dataset built from one, or a hand-placed dataset"
    )
    fetching = actions.add_parser("fetch", help="download a dataset into the user cache (or --data-dir)")
    fetching.add_argument("dataset", metavar="DATASET")
    for sub, handler in ((listing, list_data), (verifying, verify_data), (fetching, fetch_data)):
        sub.add_argument("--data-dir", type=Path, help="look here first (fetch: download here)")
        sub.set_defaults(func=handler)
    example = actions.add_parser(
        "example",
        help="write your-own-problem example files: a table of images, an .npz, a custom network, configs",
        description="Write the embedded Fashion-MNIST sample as a user's own data - PNG images with labels.csv "
        "(multiclass, binary, regression with missing cells, multilabel), the same as fashion.npz, a custom "
        "network in custom_net.py - and the configs that train them (table.yaml, arrays.yaml, custom.yaml, "
        "study.yaml). Then: mtlab train DIR/table.yaml",
    )
    example.add_argument("directory", type=Path, help="where to write (created; existing example files are replaced)")
    example.set_defaults(func=write_example)


def _load_datasets() -> None:
    """Import every dataset module, mtlab's and installed plug-ins': each registers its sources or hand-placed files."""
    import mtlab.data.builtin  # noqa: F401  (registers)
    from mtlab.registry import load_entry_points

    load_entry_points("mtlab.datasets")


def sources() -> dict[str, Source]:
    """Every registered source: those of mtlab's own dataset modules and of installed plug-ins."""
    from mtlab.data.sources import SOURCES

    _load_datasets()
    return SOURCES


def hand_placed() -> dict[str, HandPlaced]:
    """Every hand-placed dataset (mtlab's and installed plug-ins'), by name."""
    from mtlab.data.placed import HAND_PLACED

    _load_datasets()
    return HAND_PLACED


def readers() -> dict[str, list[str]]:
    """Source name -> the datasets that read it, as each registered dataset answers (with its default options)."""
    from mtlab.config.base import DATASETS

    found: dict[str, list[str]] = {name: [] for name in sources()}
    for name, options in DATASETS.items():
        try:
            config = options.model_validate({"dataset": name})
        except ValueError:  # needs more than its name (a table, an .npz): the user's own files, no source
            continue
        for source in config.sources():
            found.setdefault(source.name, []).append(name)
    return found


def write_example(args: argparse.Namespace) -> int:
    from mtlab.data.example_files import write_examples

    if args.directory.exists() and not args.directory.is_dir():
        raise DataError(f"{args.directory}: exists and is not a directory; choose another place for the examples")
    configs = write_examples(args.directory)
    print(f"wrote the example data and configs in {args.directory}:")
    for config in configs:
        print(f"  mtlab {'run' if config.name == 'study.yaml' else 'train'} {config}")
    return 0


def list_data(args: argparse.Namespace) -> int:
    from mtlab.data import resolve

    table = Table(title="datasets")
    for column in ("source", "used by", "found in", "state"):
        table.add_column(column, overflow="fold")
    used_by = readers()
    for source in sources().values():
        found = resolve.locate(source, args.data_dir)
        where = str(found.place) if found is not None else "-"
        state = found.state if found is not None else "not found"
        table.add_row(source.name, ", ".join(used_by[source.name]), where, state)
    table.caption = (
        f"user cache {resolve.user_cache_root()}; downloads {'off' if resolve.offline() else 'on'}; "
        "`mtlab data verify` checks the contents"
    )
    console = make_console()
    console.print(table)
    console.print(_hand_placed_table(args.data_dir))
    console.print(_composites_table())
    return 0


def _hand_placed_table(data_dir: Path | None) -> Table:
    """The datasets mtlab cannot download: where each was found and its file counts, or where to get it."""
    from mtlab.data import placed

    table = Table(title="datasets you put in place by hand (mtlab cannot download them)")
    for column in ("dataset", "found in", "state", "how to get it"):
        table.add_column(column, overflow="fold")
    for spec in hand_placed().values():
        place = placed.locate(spec, data_dir)
        if place is None:
            table.add_row(spec.name, "-", "not found", spec.obtain)
        else:
            table.add_row(spec.name, str(place), spec.survey(place.directory), spec.obtain)
    table.caption = "looked for in --data-dir, $MTLAB_DATA and the user cache; checked by file counts and shapes"
    return table


def _composites_table() -> Table:
    """The multi-* datasets: which sources they are drawn from, and the builds kept in the user cache."""
    from mtlab.data import derived
    from mtlab.data.multi_mnist import OVERLAYS

    table = Table(title="composite datasets (built on first use, then loaded from the cache)")
    for column in ("dataset", "built from", "cached builds"):
        table.add_column(column, overflow="fold")
    registered = sources()
    for name, drawn_from in OVERLAYS.items():
        missing = [s for s in dict.fromkeys(drawn_from) if s not in registered]
        entries = derived.cached_entries(name)
        size = sum(p.stat().st_size for p in entries) / 2**20
        cached = f"{len(entries)} ({size:.1f} MiB)" if entries else "none"
        built_from = " + ".join(dict.fromkeys(drawn_from))
        if missing:
            built_from += f" [yellow](not shipped: {', '.join(missing)})[/]"
        table.add_row(name, built_from, cached)
    table.caption = f"cache {derived.cache_dir()}; entries are keyed by construction parameters and source checksums"
    return table


def verify_data(args: argparse.Namespace) -> int:
    """Check the files of one source, or of every source found somewhere; 1 if any file is not ok."""
    from mtlab.data import resolve
    known = hand_placed()
    if args.dataset:
        _check_name(args.dataset)
        placed = [known[args.dataset]] if args.dataset in known else []
    else:
        placed = list(known.values())
    checked = _sources(args.dataset) if args.dataset else list(sources().values())
    table = Table(title="verify")
    for column in ("source", "file", "status", "detail"):
        table.add_column(column, overflow="fold")
    problems = sum(_verify_hand_placed(spec, args.data_dir, table, asked=bool(args.dataset)) for spec in placed)
    for source in checked:
        found = resolve.locate(source, args.data_dir)
        if found is None:
            # Asked for by name, absence is a problem; in a survey of everything it is just a fact.
            problems += bool(args.dataset)
            table.add_row(source.name, "-", "[yellow]not found[/]", source.hint)
            continue
        for check in resolve.verify(found):
            problems += check.status != "ok"
            path = str(check.path) if check.path is not None else f"{found.place.directory}/{check.name}"
            table.add_row(source.name, path, f"[{_STYLE[check.status]}]{check.status}[/]", check.detail)
    make_console().print(table)
    return 1 if problems else 0


def _check_name(name: str) -> None:
    """Raise unless ``name`` is a source, a dataset built from one, or a hand-placed dataset."""
    names = sorted({*sources(), *(d for users in readers().values() for d in users), *hand_placed()})
    if name not in names:
        raise MtlabError(f"DATASET: unknown dataset {name!r}; " + did_you_mean(name, names, f"known: {names}"))


def _verify_hand_placed(spec: HandPlaced, data_dir: Path | None, table: Table, asked: bool) -> int:
    """Add a row per problem with a hand-placed dataset's copy (or one ``ok`` row); the number of problems."""
    from mtlab.data import placed

    place = placed.locate(spec, data_dir)
    if place is None:
        table.add_row(spec.name, "-", "[yellow]not found[/]", spec.obtain)
        return int(asked)
    problems = spec.verify(place.directory)
    for problem in problems:
        path, _, detail = problem.partition(": ")
        table.add_row(spec.name, path, "[red]mismatch[/]", detail)
    if not problems:
        table.add_row(spec.name, str(place.directory), "[green]ok[/]", spec.survey(place.directory))
    return len(problems)


def fetch_data(args: argparse.Namespace) -> int:
    """Download the files of every source of the dataset that are not already intact in the target directory."""
    _check_name(args.dataset)
    if args.dataset in hand_placed():
        raise DataError(f"{args.dataset} cannot be downloaded by mtlab; {hand_placed()[args.dataset].obtain}")
    for source in _sources(args.dataset):
        _fetch_source(source, args.data_dir)
    return 0


def _fetch_source(source: Source, data_dir: Path | None) -> None:
    from mtlab.data import resolve
    from mtlab.data.download import fetch

    if source.embedded:
        raise DataError(f"{source.name} ships inside the package; there is nothing to fetch")
    if resolve.offline():
        raise DataError(f"downloads are off ({resolve.OFFLINE_ENV}=1); {resolve.by_hand(source, data_dir)}")
    root = data_dir.expanduser() if data_dir is not None else resolve.user_cache_root()
    place = resolve.Place(root / source.dirname, "fetch")
    existing = resolve.find_at(source, place)
    bad = [c.name for c in resolve.verify(existing) if c.status != "ok"] if existing is not None else None
    console = make_console()
    if bad == []:
        console.print(f"{source.name}: already in {place.directory}, all files intact")
        return
    fetch(source, root, names=bad, remedy=resolve.by_hand(source, data_dir))
    found = resolve.find_at(source, place)
    assert found is not None
    resolve.verified(found)
    console.print(f"{source.name}: fetched into {place.directory}")


def _sources(name: str) -> list[Source]:
    """The sources a DATASET argument names: a source itself, or every source a dataset is built from."""
    known = sources()
    if name in known:
        return [known[name]]
    return [known[source] for source, users in readers().items() if name in users]
