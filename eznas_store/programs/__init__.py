"""Programs as data: the op tables, the two representations of a program and their JSON codec.

Job: say what a zero-cost proxy program *is*, never run it. ``ops``/``proxy_ops`` hold
the operation tables (OP0..OP34 over per-block statistics; the proxy-program ops);
``tree`` the expression trees and :class:`~eznas_store.programs.tree.Program`;
``sequential`` (+ ``sequential_variation``) the AutoML-Zero instruction lists, traced
into the same trees; ``formula`` the readable text and DEAP prefix forms; ``codec`` the
JSON documents of both representations (``schemas/program.schema.json``), files
included; ``named`` the registered programs (EZNAS-A); ``names`` what a name may be.

In: JSON documents or files, formula text, prefix lists, instruction lists.
Out: validated ``Program`` / ``SequentialProgram`` objects (and the op tables) for
``evaluate/``, which interprets them; every bad input is one ``ProgramError`` line.
Import from the defining module (``eznas_store.programs.codec.load_program``); this
package re-exports nothing.
"""

from eznas_store.faces import lazy_face

# The stage's face: what other stages import from it (``from eznas_store.programs import name``),
# loaded on first use so that importing the stage stays cheap (``eznas-store -h`` loads no torch).
_FACE = {
    "AGGREGATES": "eznas_store.programs.tree",
    "Apply": "eznas_store.programs.tree",
    "NAMED_PROGRAMS": "eznas_store.programs.registered",
    "Node": "eznas_store.programs.tree",
    "OPS": "eznas_store.programs.ops",
    "OP_SETS": "eznas_store.programs.ops",
    "Op": "eznas_store.programs.ops",
    "PROXY_OPS": "eznas_store.programs.proxy_ops",
    "Program": "eznas_store.programs.tree",
    "SequentialProgram": "eznas_store.programs.sequential",
    "Terminal": "eznas_store.programs.tree",
    "code_stats": "eznas_store.programs.sequential",
    "from_prefix": "eznas_store.programs.formula",
    "load_program": "eznas_store.programs.codec",
    "op_set": "eznas_store.programs.ops",
    "parse_formula": "eznas_store.programs.formula",
    "rank_against": "eznas_store.programs.proxy_ops",
    "program_from_json": "eznas_store.programs.codec",
    "program_to_json": "eznas_store.programs.codec",
    "read_program_document": "eznas_store.programs.codec",
    "save_program": "eznas_store.programs.codec",
    "terminals_for": "eznas_store.programs.tree",
}
__all__ = sorted(_FACE)

__getattr__, __dir__ = lazy_face(__name__, _FACE)

