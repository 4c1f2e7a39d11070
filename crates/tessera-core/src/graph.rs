//! Rendering a pipeline as a graph: Graphviz DOT text and a self-contained SVG drawing.
