"""What happens to a list between the model and the page: filters, diversity, explanations."""
