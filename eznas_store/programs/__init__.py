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
