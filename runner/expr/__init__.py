"""CEL expressions, `${{ }}` bindings and Jinja2 prompts: compiled at load, evaluated per run."""

from runner.expr.bindings import (
    BindingError,
    CompiledValue,
    ExprSite,
    compile_expr_or_binding,
    compile_value,
)
from runner.expr.cel import (
    CelEvalError,
    CelSyntaxError,
    CompiledExpr,
    ExprError,
    compile_cel,
    register_function,
    truthy,
)
from runner.expr.refs import ANY_INDEX, Ref, cel_refs, free_roots
from runner.expr.templates import PromptTemplate, TemplateError, compile_template, template_refs

__all__ = [
    "ANY_INDEX",
    "BindingError",
    "CelEvalError",
    "CelSyntaxError",
    "CompiledExpr",
    "CompiledValue",
    "ExprError",
    "ExprSite",
    "PromptTemplate",
    "Ref",
    "TemplateError",
    "cel_refs",
    "compile_cel",
    "compile_expr_or_binding",
    "compile_template",
    "compile_value",
    "free_roots",
    "register_function",
    "template_refs",
    "truthy",
]
